package gateway

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Policy picks one backend among candidates that can all serve a request
// (model ready, healthy). cands is never empty. Pick is called from many
// goroutines at once.
type Policy interface {
	Pick(cands []*Backend) *Backend
}

var (
	policiesMu sync.RWMutex
	policies   = map[string]func() Policy{}
)

// RegisterPolicy makes a policy available by name; it panics when the name
// is taken (policies register in init).
func RegisterPolicy(name string, newPolicy func() Policy) {
	policiesMu.Lock()
	defer policiesMu.Unlock()
	if _, dup := policies[name]; dup {
		panic("gateway: policy " + name + " registered twice")
	}
	policies[name] = newPolicy
}

// NewPolicy returns a new instance of the policy registered as name.
func NewPolicy(name string) (Policy, error) {
	policiesMu.RLock()
	defer policiesMu.RUnlock()
	f, ok := policies[name]
	if !ok {
		return nil, fmt.Errorf("%w: unknown policy %q (have %s)", ErrConfig, name, strings.Join(policyNames(), ", "))
	}
	return f(), nil
}

// PolicyNames lists the registered policies, sorted.
func PolicyNames() []string {
	policiesMu.RLock()
	defer policiesMu.RUnlock()
	return policyNames()
}

func policyNames() []string {
	var names []string
	for n := range policies {
		names = append(names, n)
	}
	sort.Strings(names)
	return slices.Clip(names)
}
