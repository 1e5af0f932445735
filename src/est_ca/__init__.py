"""est-ca: a certificate authority with an EST interface for pre-ordered identities."""
