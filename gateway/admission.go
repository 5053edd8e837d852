package gateway

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Client is a caller the gateway admits: its bearer token, its rate limit
// as a token bucket (Rate requests a second, bursts of Burst; Rate 0 is
// unlimited), and the priority level its inference requests get on the
// backends when they name none (0: none set; 1 is the highest, as in
// Triton's dynamic batcher).
type Client struct {
	Name, Token string
	Rate        float64
	Burst       int
	Priority    int
}

// ParseClient parses "NAME:TOKEN[:RATE[:BURST[:PRIORITY]]]" (RATE in
// requests per second, 0 unlimited; BURST defaults to RATE rounded up, at
// least 1).
func ParseClient(s string) (Client, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 5 || parts[0] == "" || parts[1] == "" {
		return Client{}, fmt.Errorf("%w: client %q: want NAME:TOKEN[:RATE[:BURST[:PRIORITY]]]", ErrConfig, s)
	}
	c := Client{Name: parts[0], Token: parts[1]}
	if len(parts) > 2 {
		r, err := strconv.ParseFloat(parts[2], 64)
		if err != nil || r < 0 {
			return Client{}, fmt.Errorf("%w: client %q: rate %q is not a non-negative number", ErrConfig, c.Name, parts[2])
		}
		c.Rate = r
	}
	if len(parts) > 4 {
		p, err := strconv.Atoi(parts[4])
		if err != nil || p < 1 {
			return Client{}, fmt.Errorf("%w: client %q: priority %q is not a positive integer", ErrConfig, c.Name, parts[4])
		}
		c.Priority = p
	}
	if len(parts) > 3 && parts[3] != "" {
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

// open reports whether every caller is admitted (no clients configured).
func (a *admission) open() bool { return len(a.clients) == 0 }

// admit checks an Authorization value ("Bearer TOKEN"); it returns the
// client (the zero Client with no clients configured).
func (a *admission) admit(authorization string, now time.Time) (Client, error) {
	if len(a.clients) == 0 {
		return Client{}, nil
	}
	tok, ok := strings.CutPrefix(authorization, "Bearer ")
	if !ok {
		return Client{}, ErrUnauthenticated
	}
	for _, b := range a.clients {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(b.Token)) == 1 {
			if !b.take(now) {
				return b.Client, fmt.Errorf("%w: client %q, %g requests/s", ErrRateLimited, b.Name, b.Rate)
			}
			return b.Client, nil
		}
	}
	return Client{}, ErrUnauthenticated
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

// withPriority returns a KServe v2 JSON request (its JSON header, for the
// binary extension, whose new length it returns too) with the request
// parameter "priority" set to p, when the request sets no priority of its
// own: added to the request's parameters, or as its parameters when it has
// none (the parameters of its inputs and outputs, such as the binary
// extension's binary_data_size, are not the request's). A request that sets
// its priority, or whose header is not a well-formed JSON object, is
// returned unchanged.
func withPriority(body []byte, headerLen string, p int) ([]byte, string) {
	header := body
	n := -1
	if headerLen != "" {
		var err error
		if n, err = strconv.Atoi(headerLen); err != nil || n < 0 || n > len(body) {
			return body, headerLen
		}
		header = body[:n]
	}
	open := skipSpace(header, 0)
	params := -1 // where the value of the request's "parameters" starts
	end, ok := objectKeys(header, open, func(key []byte, val int) {
		if params < 0 && string(key) == "parameters" {
			params = val
		}
	})
	if !ok || len(bytes.TrimSpace(header[end:])) != 0 {
		return body, headerLen
	}
	var at int
	var ins []byte
	if params < 0 {
		at = open + 1
		ins = fmt.Appendf(nil, `"parameters":{"priority":%d}`, p)
	} else {
		own := false
		if _, ok := objectKeys(header, params, func(key []byte, _ int) { own = own || string(key) == "priority" }); !ok || own {
			return body, headerLen // not an object, or the request's own priority
		}
		at = params + 1
		ins = fmt.Appendf(nil, `"priority":%d`, p)
	}
	if rest := skipSpace(header, at); rest < len(header) && header[rest] != '}' {
		ins = append(ins, ',')
	}
	out := make([]byte, 0, len(body)+len(ins))
	out = append(append(append(out, body[:at]...), ins...), body[at:]...)
	if n >= 0 {
		headerLen = strconv.Itoa(n + len(ins))
	}
	return out, headerLen
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the end of the JSON string starting at b[i] ('"').
func skipString(b []byte, i int) (int, bool) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// skipValue returns the end of the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e, ok := skipString(b, j)
				if !ok {
					return 0, false
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1, true
				}
			}
		}
		return 0, false
	case ',', ':', '}', ']':
		return 0, false
	case 't', 'f', 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(b[i:], []byte(lit)) {
				return i + len(lit), true
			}
		}
		return 0, false
	}
	j := i
	for j < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[j])) {
		j++
	}
	return j, true
}

// objectKeys calls f with each key of the JSON object starting at b[i]
// (its raw bytes, escapes not decoded) and where its value starts; it
// returns the object's end, and false when b[i:] does not start with a
// well-formed object (values are checked for their bounds only).
func objectKeys(b []byte, i int, f func(key []byte, val int)) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	j := skipSpace(b, i+1)
	if j < len(b) && b[j] == '}' {
		return j + 1, true
	}
	for {
		if j >= len(b) || b[j] != '"' {
			return 0, false
		}
		e, ok := skipString(b, j)
		if !ok {
			return 0, false
		}
		key := b[j+1 : e-1]
		j = skipSpace(b, e)
		if j >= len(b) || b[j] != ':' {
			return 0, false
		}
		val := skipSpace(b, j+1)
		if j, ok = skipValue(b, val); !ok {
			return 0, false
		}
		f(key, val)
		j = skipSpace(b, j)
		if j >= len(b) {
			return 0, false
		}
		switch b[j] {
		case ',':
			j = skipSpace(b, j+1)
		case '}':
			return j + 1, true
		default:
			return 0, false
		}
	}
}

// appendPriority appends the parameter "priority" = p to a ModelInferRequest's
// wire bytes (a map entry of field 4; the request has none of its own).
func appendPriority(b []byte, p int) []byte {
	var val, entry []byte
	val = protowire.AppendTag(val, 2, protowire.VarintType) // int64_param
	val = protowire.AppendVarint(val, uint64(p))
	entry = protowire.AppendTag(entry, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "priority")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, val)
	out := make([]byte, 0, len(b)+len(entry)+4)
	out = append(out, b...)
	out = protowire.AppendTag(out, 4, protowire.BytesType)
	return protowire.AppendBytes(out, entry)
}
