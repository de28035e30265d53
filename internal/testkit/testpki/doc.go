// Package testpki makes throw-away X.509 material for tests: a private CA and
// a server certificate for 127.0.0.1, ::1 and localhost signed by it, as Go
// values and as PEM files in a temporary directory (for servers such as
// Dovecot that read files).
//
// Keys are ECDSA P-256, so creating a PKI takes about a millisecond. Nothing
// here is fit for production use.
package testpki
