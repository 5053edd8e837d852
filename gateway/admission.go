package gateway

import (
	"crypto/subtle"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is a caller the gateway admits: its bearer token, and its rate
// limit as a token bucket (Rate requests a second, bursts of Burst; Rate 0
// is unlimited).
type Client struct {
	Name, Token string
	Rate        float64
	Burst       int
}

// ParseClient parses "NAME:TOKEN[:RATE[:BURST]]" (RATE in requests per
// second; BURST defaults to RATE rounded up, at least 1).
func ParseClient(s string) (Client, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 4 || parts[0] == "" || parts[1] == "" {
		return Client{}, fmt.Errorf("%w: client %q: want NAME:TOKEN[:RATE[:BURST]]", ErrConfig, s)
	}
	c := Client{Name: parts[0], Token: parts[1]}
	if len(parts) > 2 {
		r, err := strconv.ParseFloat(parts[2], 64)
		if err != nil || r < 0 {
			return Client{}, fmt.Errorf("%w: client %q: rate %q is not a non-negative number", ErrConfig, c.Name, parts[2])
		}
		c.Rate = r
	}
	if len(parts) > 3 {
		b, err := strconv.Atoi(parts[3])
		if err != nil || b < 1 {
			return Client{}, fmt.Errorf("%w: client %q: burst %q is not a positive integer", ErrConfig, c.Name, parts[3])
		}
		c.Burst = b
	}
	return c, nil
}

// admission checks callers' tokens and rates.
type admission struct {
	clients []*bucket
}

type bucket struct {
	Client
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newAdmission(cs []Client) (*admission, error) {
	a := &admission{}
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.Token] {
			return nil, fmt.Errorf("%w: client %q: token used twice", ErrConfig, c.Name)
		}
		seen[c.Token] = true
		if c.Burst <= 0 {
			c.Burst = max(1, int(c.Rate+0.999))
		}
		a.clients = append(a.clients, &bucket{Client: c, tokens: float64(c.Burst)})
	}
	return a, nil
}

// admit checks an Authorization value ("Bearer TOKEN"); it returns the
// client's name ("" with no clients configured).
func (a *admission) admit(authorization string, now time.Time) (string, error) {
	if len(a.clients) == 0 {
		return "", nil
	}
	tok, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return "", ErrUnauthenticated
	}
	for _, b := range a.clients {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(b.Token)) == 1 {
			if !b.take(now) {
				return b.Name, fmt.Errorf("%w: client %q, %g requests/s", ErrRateLimited, b.Name, b.Rate)
			}
			return b.Name, nil
		}
	}
	return "", ErrUnauthenticated
}

func (b *bucket) take(now time.Time) bool {
	if b.Rate == 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(float64(b.Burst), b.tokens+now.Sub(b.last).Seconds()*b.Rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
