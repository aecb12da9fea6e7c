// Package opcua is the OPC UA southbound driver (driver = "opcua"): secure
// sessions (None, Basic256Sha256, Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss;
// Sign or SignAndEncrypt), anonymous, username or certificate login, edged's
// own application certificate and a trust list for server certificates,
// subscriptions (default) or polled Reads chunked by the server's operation
// limits, reconnection that rebuilds the session and its monitored items,
// writes under the tag's write policy, and browsing for `edged browse`.
//
// It knows nothing about MQTT, topics or payloads: values become
// mapping.Samples handed to a southbound.Sink.
//
// Reconnecting is ours, not gopcua's: the library's auto-reconnect gives up
// on ECONNREFUSED (a server that is restarting) and would re-open a secure
// channel without checking the server certificate against our trust list
// again. Every (re)connect therefore builds a new client: GetEndpoints,
// trust check, session, operation limits, browse paths, subscription and
// monitored items.
package opcua
