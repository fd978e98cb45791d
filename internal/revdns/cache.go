package revdns

import (
	"container/list"
	"net/netip"
	"sync"
	"time"
)

// Cache maps addresses to values that expire, holding at most a fixed
// number of entries: when full, the least recently used entry goes. It is
// safe for concurrent use.
type Cache struct {
	mu    sync.Mutex
	max   int
	lru   *list.List // of *cacheEntry, most recently used first
	items map[netip.Addr]*list.Element
}

type cacheEntry struct {
	ip      netip.Addr
	value   string
	expires time.Time
}

// Entry is one cache entry, as Entries returns it.
type Entry struct {
	IP      netip.Addr
	Value   string
	Expires time.Time
}

// NewCache returns a cache of at most max entries; max <= 0 caches
// nothing.
func NewCache(max int) *Cache {
	return &Cache{max: max, lru: list.New(), items: make(map[netip.Addr]*list.Element)}
}

// Get returns the value for ip when it has not expired at now. An expired
// entry is dropped.
func (c *Cache) Get(ip netip.Addr, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[ip]
	if !ok {
		return "", false
	}
	e := el.Value.(*cacheEntry)
	if !now.Before(e.expires) {
		c.lru.Remove(el)
		delete(c.items, ip)
		return "", false
	}
	c.lru.MoveToFront(el)
	return e.value, true
}

// Put stores a value until expires, as the most recently used entry.
func (c *Cache) Put(ip netip.Addr, value string, expires time.Time) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[ip]; ok {
		e := el.Value.(*cacheEntry)
		e.value, e.expires = value, expires
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).ip)
	}
	c.items[ip] = c.lru.PushFront(&cacheEntry{ip, value, expires})
}

// putOld stores an entry as the least recently used one, unless ip is
// cached already or the cache is full.
func (c *Cache) putOld(ip netip.Addr, value string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[ip]; ok || c.lru.Len() >= c.max {
		return
	}
	c.items[ip] = c.lru.PushBack(&cacheEntry{ip, value, expires})
}

// Delete removes ip.
func (c *Cache) Delete(ip netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[ip]; ok {
		c.lru.Remove(el)
		delete(c.items, ip)
	}
}

// Len returns the number of entries, expired ones included.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Entries returns the entries that have not expired at now, most recently
// used first.
func (c *Cache) Entries(now time.Time) []Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Entry, 0, c.lru.Len())
	for el := c.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			out = append(out, Entry{e.ip, e.value, e.expires})
		}
	}
	return out
}
