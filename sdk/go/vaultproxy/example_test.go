package vaultproxy_test

// Examples (compiled by go test and shown by go doc; not run: they need a vault).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/vault-proxy/vault-proxy/sdk/go/vaultproxy"
)

func Example() {
	ctx := context.Background()
	c, err := vaultproxy.New() // $VAULT_ADDR, $VAULT_TOKEN or ~/.vault-proxy/session
	if err != nil {
		log.Fatal(err)
	}
	resp, err := c.Proxy(ctx, "openai", "GET", "v1/models", nil, nil)
	if err != nil {
		log.Fatal(err) // the vault refused or failed: a *VaultError
	}
	defer resp.Body.Close()
	fmt.Println("upstream answered", resp.StatusCode)
}

func ExampleClient_Proxy_streaming() {
	ctx := context.Background()
	c, _ := vaultproxy.New()
	body := strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	header := http.Header{"Content-Type": {"application/json"}, "Accept": {"text/event-stream"}}
	resp, err := c.Proxy(ctx, "openai", "POST", "v1/chat/completions", body, header)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	scanner := bufio.NewScanner(resp.Body)
	for scanner.Scan() { // each event as soon as the upstream sends it
		if line := scanner.Text(); strings.HasPrefix(line, "data: ") {
			fmt.Println(strings.TrimPrefix(line, "data: "))
		}
	}
	if err := scanner.Err(); err != nil {
		log.Fatal(err)
	}
}

func ExampleVaultError() {
	ctx := context.Background()
	c, _ := vaultproxy.New()
	_, err := c.GetService(ctx, "nope")
	var verr *vaultproxy.VaultError
	switch {
	case errors.As(err, &verr) && verr.StatusCode == http.StatusNotFound:
		fmt.Println("no such service:", verr.Message)
	case errors.As(err, &verr) && verr.StatusCode == 0:
		fmt.Println("vault-server unreachable:", verr.Message)
	case err != nil:
		log.Fatal(err)
	}
}

func ExampleClient_CreateToken() {
	ctx := context.Background()
	admin, _ := vaultproxy.New()
	tok, err := admin.CreateToken(ctx, vaultproxy.TokenRequest{
		Scope: vaultproxy.ScopeProxy, Services: []string{"openai"}, TTL: 2 * time.Hour, Name: "agent-7",
	})
	if err != nil {
		log.Fatal(err)
	}
	agent, _ := vaultproxy.NewWithToken(admin.Addr(), tok.ID)
	services, _ := agent.ListServices(ctx) // only "openai"
	fmt.Println(len(services))
}
