// Package monitor owns what meshpki knows about certificates it did not
// just sign: reading the chain an endpoint presents or a file holds
// (targets, STARTTLS, PEM, DER and PKCS#12), the health checks run on it
// (expiry, renewal overdue, trust, hostname, weak keys and signatures,
// lint), and the scanner that runs them over many targets with bounded
// concurrency. The check ids and severities are an interface: alert rules
// and scripts name them. docs/SCAN.md describes both.
package monitor
