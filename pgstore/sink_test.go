package pgstore

import "github.com/popbridge/popbridge/poller"

// The poller can deliver into a Store as it is.
var _ poller.Sink = (*Store)(nil)
