// Package platform holds the helpers both orderflow services build their
// processes from: configuration from the environment, the database, the
// messaging runtime, the HTTP server and its drain on SIGTERM. Each service's
// composition root (apps/<service>/service) calls them in order.
package platform
