package store_test

import (
	"context"
	"testing"

	"github.com/popbridge/popbridge/internal/testkit/storetest"
	"github.com/popbridge/popbridge/store"
)

// TestContract runs the backend contract suite against the SQLite store.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		s, err := store.Open(context.Background(), t.TempDir(), store.Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return s
	})
}
