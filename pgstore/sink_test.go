package pgstore

import "github.com/popbridge/popbridge/poller"

// The poller can deliver into a Store as it is. (When package store gains
// store.Staged and poller.Sink asks for Stage, make pgstore.Staged an
// alias, `type Staged = store.Staged`, and ErrStagedDone
// store.ErrStagedDone: the method sets are already identical.)
var _ poller.Sink = (*Store)(nil)
