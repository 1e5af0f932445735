"""HTTP for relying parties: CRLs, OCSP (RFC 6960 appendix A) and CA certificates."""
