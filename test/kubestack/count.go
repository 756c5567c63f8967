package kubestack

import (
	"net/http"
	"sync"

	"k8s.io/client-go/rest"
)

// Counter counts the HTTP requests of the clients whose config it wrapped,
// by kind: POST, GET, LIST, WATCH, PATCH, PUT, DELETE. It is safe for
// concurrent use.
type Counter struct {
	mu sync.Mutex
	n  map[string]int
}

// Wrap returns a copy of cfg whose transport counts into c.
func (c *Counter) Wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			c.add(kind(r))
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

func kind(r *http.Request) string {
	if r.Method != http.MethodGet {
		return r.Method
	}
	q := r.URL.Query()
	switch {
	case q.Get("watch") == "true" || q.Get("watch") == "1":
		return "WATCH"
	case q.Has("labelSelector") || q.Has("limit") || q.Has("resourceVersion"):
		return "LIST"
	default:
		return "GET"
	}
}

func (c *Counter) add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[k]++
}

// Get returns the count for one kind.
func (c *Counter) Get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k]
}

// Total returns the count of all requests.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := 0
	for _, v := range c.n {
		t += v
	}
	return t
}

// Reset sets every count to zero.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
