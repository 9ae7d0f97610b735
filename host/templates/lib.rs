//! The `{{Service}}` ESP service. `wasp build` builds it, `wasp call
//! wasp.toml {{name}} Greet --param Name=Ada` calls it, `wasp run wasp.toml`
//! serves it (README.md). The SDK is in wasp-sdk/ (`cargo doc --open`).

use wasp_sdk::{Fault, Kv, Request, Service, config, log};

struct {{Service}};

impl Service for {{Service}} {
    const SERVICE_TYPE: &'static str = "{{Service}}";
    const VERSION: &'static str = "0.1.0";
    const METHODS: &'static [&'static str] = &["Greet"];

    fn handle(req: Request) -> Result<Kv, Fault> {
        // Missing or not a string: fault 1 or 2, naming the parameter.
        let name = req.parameters.require_str("Name")?;
        let greeting = config::get("greeting").unwrap_or_else(|| "Hello".into());
        log::info("greeting", &[("name", name)]);
        Ok(Kv::new()
            .with("Greeting", format!("{greeting}, {name}!"))
            .with("Tenant", req.tenant.id))
    }
}

wasp_sdk::export!({{Service}});
