// Package scheduler queues inference requests for one model and runs them on
// a set of instances: a dynamic batcher that concatenates requests of the
// same shape along the batch dimension (up to a maximum batch size, preferring
// configured sizes, waiting at most a maximum queue delay), priority levels
// and a queue policy per level (timeouts enforced while every instance is
// busy, REJECT or DELAY, maximum queue size, per-request timeout override).
// A request whose context ends leaves the queue at once. With a latency
// objective (Options.SLO) an SLO batcher replaces the fixed queue delay: it
// picks each batch's size and how long to wait from the measured cost of
// each batch size and the arrival rate, and counts the requests that met
// the objective (slo.go).
package scheduler
