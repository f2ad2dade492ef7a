package vaultproxy_test

// Tests that need no server: addresses, token resolution, unreachable servers.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vault-proxy/vault-proxy/sdk/go/vaultproxy"
)

func TestAddresses(t *testing.T) {
	t.Setenv(vaultproxy.AddrEnv, "")
	cases := []struct{ in, want string }{
		{"", vaultproxy.DefaultAddr},
		{"127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"http://localhost:8390/", "http://localhost:8390"},
		{"http://[::1]:8390", "http://[::1]:8390"},
		{"https://vault.example.com:8443/", "https://vault.example.com:8443"},
		{"https://vault.example.com/prefix/", "https://vault.example.com/prefix"},
		{"unix:/run/vault.sock", "unix:/run/vault.sock"},
		{"unix:///run/vault.sock", "unix:/run/vault.sock"},
	}
	for _, tc := range cases {
		c, err := vaultproxy.NewWithToken(tc.in, "tok")
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if c.Addr() != tc.want {
			t.Errorf("%q: Addr() = %q, want %q", tc.in, c.Addr(), tc.want)
		}
		if strings.Contains(c.String(), "tok") {
			t.Errorf("String() shows the token: %s", c)
		}
	}

	c, err := vaultproxy.NewWithSocket("/run/vault.sock", "tok")
	if err != nil || c.Addr() != "unix:/run/vault.sock" {
		t.Fatalf("NewWithSocket: %v %v", c, err)
	}

	t.Setenv(vaultproxy.AddrEnv, "https://from-env.example.com")
	c, err = vaultproxy.New()
	if err != nil || c.Addr() != "https://from-env.example.com" {
		t.Fatalf("New() with VAULT_ADDR: %v %v", c, err)
	}
}

func TestAddressesRefused(t *testing.T) {
	invalid := []string{"unix:relative.sock", "ftp://host", "http://user:pw@127.0.0.1:1", "http://:8390", "http://127.0.0.1:notaport"}
	for _, addr := range invalid {
		_, err := vaultproxy.NewWithToken(addr, "")
		if !errors.Is(err, vaultproxy.ErrInvalidAddress) {
			t.Errorf("%q: want ErrInvalidAddress, got %v", addr, err)
		}
		var verr *vaultproxy.VaultError
		if !errors.As(err, &verr) || verr.StatusCode != 0 {
			t.Errorf("%q: want a *VaultError with StatusCode 0, got %v", addr, err)
		}
	}
	if _, err := vaultproxy.NewWithSocket("", ""); !errors.Is(err, vaultproxy.ErrInvalidAddress) {
		t.Errorf("empty socket path: got %v", err)
	}

	// Plain http to a non-loopback host sends the token in clear: refused unless allowed.
	for _, addr := range []string{"http://vault.example.com:8390", "10.0.0.5:8390", "http://192.168.1.10"} {
		_, err := vaultproxy.NewWithToken(addr, "")
		if !errors.Is(err, vaultproxy.ErrInsecureAddress) {
			t.Errorf("%q: want ErrInsecureAddress, got %v", addr, err)
		}
		if _, err := vaultproxy.NewWithToken(addr, "", vaultproxy.WithAllowInsecure()); err != nil {
			t.Errorf("%q with WithAllowInsecure: %v", addr, err)
		}
	}
}

func TestTokenResolution(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv(vaultproxy.TokenEnv, "")
	t.Setenv(vaultproxy.AddrEnv, "")

	if got := vaultproxy.SessionPath(); got != filepath.Join(home, ".vault-proxy", "session") {
		t.Fatalf("SessionPath() = %q", got)
	}
	c, err := vaultproxy.New()
	if err != nil || c.Token() != "" {
		t.Fatalf("no session file: token %q, err %v", c.Token(), err)
	}

	noErr(t, os.MkdirAll(filepath.Join(home, ".vault-proxy"), 0o700))
	noErr(t, os.WriteFile(vaultproxy.SessionPath(), []byte("from-session-file\n"), 0o600))
	c, _ = vaultproxy.New()
	if c.Token() != "from-session-file" {
		t.Fatalf("session file: token %q", c.Token())
	}

	t.Setenv(vaultproxy.TokenEnv, " from-env ")
	c, _ = vaultproxy.New()
	if c.Token() != "from-env" {
		t.Fatalf("VAULT_TOKEN: token %q", c.Token())
	}

	c, _ = vaultproxy.NewWithToken("", "explicit")
	if c.Token() != "explicit" {
		t.Fatalf("explicit: token %q", c.Token())
	}
	c.SetToken("other")
	if c.Token() != "other" {
		t.Fatalf("SetToken: token %q", c.Token())
	}
}

func TestUnreachableServer(t *testing.T) {
	port, err := freePort()
	noErr(t, err)
	c, err := vaultproxy.NewWithToken(fmt.Sprintf("127.0.0.1:%d", port), "tok", vaultproxy.WithTimeout(5*time.Second))
	noErr(t, err)
	_, err = c.Health(context.Background())
	verr := wantVaultError(t, err, 0, "cannot reach vault-server at http://127.0.0.1:")
	if verr.Err == nil {
		t.Fatalf("the cause should be kept in Err")
	}
	_, err = c.Proxy(context.Background(), "svc", "GET", "/", nil, nil)
	wantVaultError(t, err, 0, "cannot reach vault-server")

	sock, err := vaultproxy.NewWithSocket(filepath.Join(t.TempDir(), "none.sock"), "tok")
	noErr(t, err)
	_, err = sock.ListServices(context.Background())
	wantVaultError(t, err, 0, "cannot reach vault-server at unix:")

	// A cancelled context is reported as such.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Health(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: got %v", err)
	}
}

func TestEmptyNamesRefused(t *testing.T) {
	c, err := vaultproxy.NewWithToken("127.0.0.1:1", "tok")
	noErr(t, err)
	ctx := context.Background()
	if _, err := c.GetService(ctx, ""); err == nil {
		t.Error("GetService(\"\") should fail")
	}
	if err := c.RemoveService(ctx, ""); err == nil {
		t.Error("RemoveService(\"\") should fail")
	}
	if _, err := c.GetFile(ctx, ""); err == nil {
		t.Error("GetFile(\"\") should fail")
	}
	if err := c.RevokeToken(ctx, ""); err == nil {
		t.Error("RevokeToken(\"\") should fail")
	}
	if _, err := c.Proxy(ctx, "", "GET", "x", nil, nil); err == nil {
		t.Error("Proxy with no service should fail")
	}
}

func TestVaultErrorFormatting(t *testing.T) {
	err := error(&vaultproxy.VaultError{StatusCode: 404, Message: `service "x" not found`})
	if err.Error() != `vault-proxy: 404 service "x" not found` {
		t.Fatalf("Error() = %q", err.Error())
	}
	if !vaultproxy.IsStatus(fmt.Errorf("wrapped: %w", err), 404) || vaultproxy.IsStatus(err, 403) {
		t.Fatal("IsStatus should look through wrapping and compare the status")
	}
	cause := errors.New("boom")
	err = &vaultproxy.VaultError{Message: "no answer", Err: cause}
	if !errors.Is(err, cause) || err.Error() != "vault-proxy: no answer" {
		t.Fatalf("unwrap/format: %v", err)
	}
}
