"""HTTP plumbing shared by the protocol layers: TLS, listeners, middleware, error mapping."""
