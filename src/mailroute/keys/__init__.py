"""Where secrets and certificates come from: certificate stores, key files."""
