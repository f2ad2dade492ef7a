"""``vault-cli``: the operator's and agent's command line (a client of the HTTP API)."""
