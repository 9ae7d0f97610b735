//! `Echo` service: returns its parameters. Used by benchmarks and as the
//! smallest example of a wasp plugin.

use wasp_sdk::{Fault, Kv, Request, Service};

struct Echo;

impl Service for Echo {
    const SERVICE_TYPE: &'static str = "Echo";
    const VERSION: &'static str = "1.0";
    const METHODS: &'static [&'static str] = &["Echo"];

    fn handle(req: Request) -> Result<Kv, Fault> {
        Ok(req.parameters)
    }
}

wasp_sdk::export!(Echo);
