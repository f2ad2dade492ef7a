// Package vaultproxy is the Go SDK of vault-proxy, a self-hosted secrets vault with a
// credential-injecting HTTP proxy. It mirrors the Python SDK (vault_proxy.VaultClient) and uses
// the standard library only.
//
// A Client talks to vault-server over HTTP(S) or a unix socket:
//
//	c, err := vaultproxy.New() // $VAULT_ADDR, $VAULT_TOKEN or ~/.vault-proxy/session
//	if err != nil { … }
//	resp, err := c.Proxy(ctx, "openai", "GET", "v1/models", nil, nil)
//	if err != nil { … }          // a *VaultError: the vault refused or failed
//	defer resp.Body.Close()      // resp is the upstream's answer, whatever its status
//
// Calls to the vault's own API (services, tokens, files, SSH, sessions) return a *VaultError for
// every non-2xx answer, with the vault's HTTP status and message; use errors.As or IsStatus.
// Proxy returns the upstream's response unchanged and fails only for answers the vault generated
// itself, which carry the X-Vault-Error: 1 header.
package vaultproxy
