// Package cache holds what pullgate keeps between requests: the
// content-addressed store (cache/store), the records kept beside it
// (cache/records), the verdict cache (cache/verdict) and
// in-flight fetch coalescing (cache/inflight). Nothing here decides anything.
package cache
