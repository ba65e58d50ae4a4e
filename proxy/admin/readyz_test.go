package admin

import (
	"errors"
	"net/http/httptest"
	"testing"
)

// /readyz says what the server is still doing (the store index being
// built), ready or not.
func TestReadyzStatus(t *testing.T) {
	status := func() string { return "store index: building for 3s, 41% of the store walked" }
	ready := httptest.NewServer(New(Options{Status: status, Ready: func() error { return nil }}))
	defer ready.Close()
	if r, b := fetch(t, "GET", ready.URL+"/readyz"); r.StatusCode != 200 || b != "ok\n"+status()+"\n" {
		t.Fatalf("ready: %d %q", r.StatusCode, b)
	}
	down := httptest.NewServer(New(Options{Status: status, Ready: func() error { return errors.New("store not writable") }}))
	defer down.Close()
	if r, b := fetch(t, "GET", down.URL+"/readyz"); r.StatusCode != 503 || b != "not ready: store not writable\n"+status()+"\n" {
		t.Fatalf("not ready: %d %q", r.StatusCode, b)
	}
}
