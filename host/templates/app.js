// The `{{Service}}` ESP service. `wasp build` builds it, `wasp call
// wasp.toml {{name}} Greet --param Name=Ada` calls it, `wasp run wasp.toml`
// serves it (README.md). The SDK is wasp-sdk.js.

import { defineService, config, log } from './wasp-sdk.js';

export const service = defineService({
  type: '{{Service}}',
  version: '0.1.0',
  methods: {
    Greet(req) {
      // Missing or not a string: fault 1 or 2, naming the parameter.
      const name = req.params.getStr('Name');
      const greeting = config.get('greeting', 'Hello');
      log.info('greeting', { name });
      return { Greeting: `${greeting}, ${name}!`, Tenant: req.tenant.id };
    },
  },
});
