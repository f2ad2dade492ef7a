module github.com/vault-proxy/vault-proxy/sdk/go

go 1.22
