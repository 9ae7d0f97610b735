"""The `{{Service}}` ESP service. `wasp build` builds it, `wasp call
wasp.toml {{name}} Greet --param Name=Ada` calls it, `wasp run wasp.toml`
serves it (README.md). The SDK is in wasp_sdk/."""

import wasp_sdk
from wasp_sdk import config, log


class Service(wasp_sdk.Service):  # componentize-py looks for app.Service
    SERVICE_TYPE = "{{Service}}"
    VERSION = "0.1.0"
    METHODS = ["Greet"]

    def Greet(self, req):
        # Missing or not a string: fault 1 or 2, naming the parameter.
        name = req.params.get_str("Name")
        greeting = config.get("greeting", "Hello")
        log.info("greeting", name=name)
        return {"Greeting": f"{greeting}, {name}!", "Tenant": req.tenant.id}
