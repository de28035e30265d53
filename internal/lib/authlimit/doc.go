// Package authlimit slows down password guessing the way Dovecot's
// auth_penalty does, keyed both by client address and by user name.
//
// # Model
//
// A [Limiter] keeps one penalty record per client address group and one per
// user name. An address group is a single IPv4 address (IPv4-mapped IPv6
// addresses count as IPv4) or an IPv6 /48, since one IPv6 client can
// trivially own a whole /64 or /48. User names are compared lower-cased;
// names longer than 128 bytes are stored as a SHA-256 digest so a hostile
// client cannot make keys large.
//
// Each record holds a penalty level and the time of its last failure. The
// first failure sets the level to Options.Base (2 s); every further failure
// doubles it up to Options.Max (15 s): 2, 4, 8, 15, 15 … seconds. A record
// whose last failure is older than Options.Forget (15 min) is forgotten.
//
// [Limiter.Delay] returns how long the server should wait before answering a
// login attempt: for each of the two records, the time left until
// last failure + level, and the larger of the two. As in Dovecot, the delay
// counts from the last failure, so it limits the attempt rate: a client that
// waits out its penalty by itself is not delayed again, but its next failure
// still raises the level until the record is forgotten.
//
// [Limiter.Failure] records a failed attempt. The caller passes a keyed
// fingerprint of the password tried (for example HMAC-SHA-256 under a
// per-process random key, truncated), never the password. If the same
// (user, fingerprint) pair is among the last 10 failures recorded for the
// address group, neither the address nor the user level rises (the
// timestamps still move): a phone retrying an old password every few minutes
// stays at the first level instead of escalating. An empty fingerprint never
// matches.
//
// [Limiter.Success] forgets the address group's and the user's records.
//
// # Using it
//
// For every LOGIN or AUTHENTICATE attempt (see the package example):
//
//  0. [Limiter.Acquire] the address's turn; release it after the answer.
//  1. [Limiter.Wait] before checking the password, for every attempt, so a
//     fast answer never tells an attacker that a guess was right while a
//     wrong one would have been slow.
//  2. Check the password.
//  3. On failure: [Limiter.Failure] with a [Fingerprinter] fingerprint, then
//     [Limiter.Wait] again, so the NO itself comes after the new penalty
//     (this also gives Dovecot's auth_failure_delay: at least Base before
//     any NO). The next attempt on the same connection then finds the
//     penalty spent and is not delayed twice.
//  4. On success: [Limiter.Success].
//
// Pass a context that is cancelled when the connection closes or the
// server shuts down, so waiting goroutines end promptly.
//
// # Never locking an account: the trade-off
//
// Nothing here refuses a login; it only delays the answer, by at most Max.
// Because the per-user record applies to every address, an attacker who
// guesses bob's password from one address makes bob's own logins from any
// other address wait too, up to Max (15 s) per attempt, for as long as the
// attack goes on (bob's success clears the user record, and the attacker's
// next failure starts it again at Base). That is the price of catching
// attackers that spread one user's guesses over many addresses, and of
// closing the hole where an attacker resets its address record by logging
// in to an account of its own between guesses (Success clears the address
// record, but not other users' records). The address record, by contrast,
// only ever delays attempts from that address group: a user logging in from
// elsewhere is never delayed by another address's failures.
//
// Parallel attempts from one address would all see the same delay and be
// checked at once (Dovecot has that gap: 50 parallel guesses were all
// answered within 31 s). [Limiter.Acquire] closes it: one attempt per
// address group is in progress at a time, so N parallel guesses take as
// long as N sequential ones. Attempts from different addresses never wait
// for each other.
//
// Addresses in Options.Trusted are neither delayed nor recorded.
//
// # Memory and concurrency
//
// At most Options.MaxEntries records (addresses plus users, default 100,000;
// about 300 bytes of heap each, so about 30 MB when full) are kept; when a new record would exceed that, the
// record with the oldest last failure is evicted. Forgotten records are
// dropped lazily as failures are recorded, so the limiter starts no
// goroutine and needs no Close. All methods are safe for concurrent use; a
// single mutex guards the state and no method holds it while sleeping.
//
// Time comes from Options.Now and sleeping from Options.Sleep, so tests drive
// the curve with a fake clock and never sleep.
package authlimit
