package vaultproxy_test

// A second vault-server of its own, listening on a unix socket: first unlock, password change,
// lock, and what the clients get afterwards. It leaves the shared server unlocked.

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/vault-proxy/vault-proxy/sdk/go/vaultproxy"
)

func TestUnixSocketPasswordAndLock(t *testing.T) {
	e := needServer(t)
	ctx := testCtx(t)

	dir, err := os.MkdirTemp("", "vps-") // short: unix socket paths are limited to ~100 bytes
	noErr(t, err)
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "vault.sock")
	srv, err := startServer(e.bin, filepath.Join(dir, "data"), "unix:"+sock)
	if err != nil {
		t.Fatalf("vault-server on a unix socket: %v", err)
	}
	defer srv.stop()

	c, err := vaultproxy.NewWithSocket(sock, "")
	noErr(t, err)
	c.SetToken("")
	h, err := c.Health(ctx)
	noErr(t, err)
	if h.Unlocked() || h.Status != "locked" {
		t.Fatalf("a new server starts locked: %+v", h)
	}
	_, err = c.ListServices(ctx)
	wantVaultError(t, err, http.StatusUnauthorized, "authorization required")

	_, err = c.Unlock(ctx, "short")
	wantVaultError(t, err, http.StatusBadRequest, "at least 8")
	first, second := "first-"+randomHex(8), "second-"+randomHex(8)
	_, err = c.Unlock(ctx, first) // creates the vault
	noErr(t, err)

	// The same server through a unix: address.
	viaAddr, err := vaultproxy.NewWithToken("unix:"+sock, c.Token())
	noErr(t, err)
	name := uniqueName("on-socket")
	_, err = viaAddr.AddService(ctx, vaultproxy.Service{Name: name, BaseURL: "https://api.example.com", Auth: vaultproxy.BearerAuth("sk-" + randomHex(8))})
	noErr(t, err)
	list, err := c.ListServices(ctx)
	noErr(t, err)
	if len(list) != 1 || list[0].Name != name {
		t.Fatalf("services over the socket: %+v", list)
	}

	err = c.ChangePassword(ctx, "wrong-password", second)
	wantVaultError(t, err, http.StatusUnauthorized)
	noErr(t, c.ChangePassword(ctx, first, second))

	// Lock: every token is revoked; this client forgets its own.
	noErr(t, c.Lock(ctx))
	if c.Token() != "" {
		t.Fatal("Lock should clear the client's token")
	}
	h, err = c.Health(ctx)
	noErr(t, err)
	if h.Unlocked() {
		t.Fatal("health after lock says unlocked")
	}
	_, err = c.ListServices(ctx)
	wantVaultError(t, err, http.StatusUnauthorized, "authorization required")
	_, err = viaAddr.ListServices(ctx)
	wantVaultError(t, err, http.StatusUnauthorized, "invalid token")
	err = viaAddr.Lock(ctx)
	wantVaultError(t, err, http.StatusUnauthorized)

	// The password change held; the data survived the lock.
	_, err = c.Unlock(ctx, first)
	wantVaultError(t, err, http.StatusUnauthorized, "wrong password")
	_, err = c.Unlock(ctx, second)
	noErr(t, err)
	got, err := c.GetService(ctx, name)
	noErr(t, err)
	if got.Name != name {
		t.Fatalf("service after relock: %+v", got)
	}
	noErr(t, c.Lock(ctx))
}
