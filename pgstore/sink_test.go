package pgstore

import (
	"github.com/popbridge/popbridge/imapfront"
	"github.com/popbridge/popbridge/poller"
)

// The poller can deliver into a Store, and the IMAP server can serve one.
var (
	_ poller.Sink     = (*Store)(nil)
	_ imapfront.Store = (*Store)(nil)
)
