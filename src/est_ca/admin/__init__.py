"""Administration: who may do what (principals, scopes, tokens) and the operations they call."""
