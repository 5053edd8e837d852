package main

import (
	"errors"
	"fmt"
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// Tolerance is the HorizontalPodAutoscaler controller's default tolerance
// (kube-controller-manager --horizontal-pod-autoscaler-tolerance): no
// scaling while the metric is within 10% of its target.
const Tolerance = 0.1

// ErrNoMetrics is returned when no pod of the target has a metric value.
var ErrNoMetrics = errors.New("hpa: no metrics for the targeted pods")

// HPA applies the Kubernetes HorizontalPodAutoscaler algorithm, as its
// documentation describes it, to one Pods metric with an AverageValue
// target: desired = ceil(current * metric / target) outside the tolerance,
// pods without a metric assumed at the target (scaling down) or at zero
// (scaling up), then the behavior's stabilization windows and scaling
// policies, and minReplicas and maxReplicas.
type HPA struct {
	Min, Max int
	// Target is the metric's target average value per pod.
	Target float64
	Up     Rules
	Down   Rules

	recs     []recommendation
	upEvents []scaleEvent
	dnEvents []scaleEvent
}

// Rules is one direction of an HPA's behavior.
type Rules struct {
	Window       time.Duration
	SelectPolicy autoscalingv2.ScalingPolicySelect
	Policies     []Policy
}

// Policy is one scaling policy: Pods or Percent over Period.
type Policy struct {
	Type   autoscalingv2.HPAScalingPolicyType
	Value  int
	Period time.Duration
}

type recommendation struct {
	at       time.Time
	replicas int
}

type scaleEvent struct {
	at     time.Time
	change int
}

// Decision is one evaluation of the HPA.
type Decision struct {
	// Average is the metric's average over the pods that had a value.
	Average float64
	// Metric is the replica count the metric alone asks for; Desired is the
	// count after stabilization, policies and bounds.
	Metric, Desired int
	Reason          string
}

// NewHPA reads the scaling parameters of an autoscaling/v2 spec with one
// Pods metric of an AverageValue target, filling the API's defaults for an
// unset behavior.
func NewHPA(spec autoscalingv2.HorizontalPodAutoscalerSpec) (*HPA, error) {
	if len(spec.Metrics) != 1 || spec.Metrics[0].Type != autoscalingv2.PodsMetricSourceType || spec.Metrics[0].Pods == nil {
		return nil, fmt.Errorf("hpa: want one Pods metric, have %d metrics", len(spec.Metrics))
	}
	tg := spec.Metrics[0].Pods.Target
	if tg.Type != autoscalingv2.AverageValueMetricType || tg.AverageValue == nil {
		return nil, fmt.Errorf("hpa: want an AverageValue target, have %s", tg.Type)
	}
	h := &HPA{Min: 1, Max: int(spec.MaxReplicas), Target: tg.AverageValue.AsApproximateFloat64()}
	if spec.MinReplicas != nil {
		h.Min = int(*spec.MinReplicas)
	}
	if h.Target <= 0 || h.Min < 1 || h.Max < h.Min {
		return nil, fmt.Errorf("hpa: target %g, replicas %d..%d: want a positive target and 1 <= min <= max", h.Target, h.Min, h.Max)
	}
	// the API's defaults (autoscaling/v2 SetDefaults_HorizontalPodAutoscalerBehavior)
	h.Up = Rules{Window: 0, SelectPolicy: autoscalingv2.MaxChangePolicySelect, Policies: []Policy{
		{autoscalingv2.PercentScalingPolicy, 100, 15 * time.Second}, {autoscalingv2.PodsScalingPolicy, 4, 15 * time.Second}}}
	h.Down = Rules{Window: 300 * time.Second, SelectPolicy: autoscalingv2.MaxChangePolicySelect, Policies: []Policy{
		{autoscalingv2.PercentScalingPolicy, 100, 15 * time.Second}}}
	if b := spec.Behavior; b != nil {
		rules(&h.Up, b.ScaleUp)
		rules(&h.Down, b.ScaleDown)
	}
	return h, nil
}

func rules(r *Rules, in *autoscalingv2.HPAScalingRules) {
	if in == nil {
		return
	}
	if in.StabilizationWindowSeconds != nil {
		r.Window = time.Duration(*in.StabilizationWindowSeconds) * time.Second
	}
	if in.SelectPolicy != nil {
		r.SelectPolicy = *in.SelectPolicy
	}
	if len(in.Policies) > 0 {
		r.Policies = nil
		for _, p := range in.Policies {
			r.Policies = append(r.Policies, Policy{p.Type, int(p.Value), time.Duration(p.PeriodSeconds) * time.Second})
		}
	}
}

// Scale divides every window and period by f (f > 1 runs the loop faster
// than a cluster would, with the same shape).
func (h *HPA) Scale(f float64) {
	for _, r := range []*Rules{&h.Up, &h.Down} {
		r.Window = time.Duration(float64(r.Window) / f)
		for i := range r.Policies {
			r.Policies[i].Period = time.Duration(float64(r.Policies[i].Period) / f)
		}
	}
}

// Evaluate is one sync of the controller at now: current is the scale
// target's replica count, pods the names of its pods that are not being
// deleted, values the metric of those that have one.
func (h *HPA) Evaluate(now time.Time, current int, pods []string, values map[string]float64) (Decision, error) {
	var d Decision
	switch {
	case current > h.Max:
		d.Desired, d.Metric, d.Reason = h.Max, h.Max, "above maxReplicas"
		h.record(now, current, d.Desired)
		return d, nil
	case current < h.Min:
		d.Desired, d.Metric, d.Reason = h.Min, h.Min, "below minReplicas"
		h.record(now, current, d.Desired)
		return d, nil
	}
	m, avg, err := h.metricReplicas(current, pods, values)
	if err != nil {
		return d, err
	}
	d.Average, d.Metric = avg, m
	stab := h.stabilize(now, current, m)
	d.Desired, d.Reason = h.limit(now, current, stab)
	if d.Reason == "" {
		d.Reason = "metric"
		if stab != m {
			d.Reason = "stabilization window"
		}
	}
	h.record(now, current, d.Desired)
	return d, nil
}

// metricReplicas is the replica count the metric asks for (the
// controller's calcPlainMetricReplicas for a Pods metric).
func (h *HPA) metricReplicas(current int, pods []string, values map[string]float64) (int, float64, error) {
	metrics := map[string]float64{}
	var missing []string
	for _, p := range pods {
		if v, ok := values[p]; ok {
			metrics[p] = v
		} else {
			missing = append(missing, p)
		}
	}
	if len(metrics) == 0 {
		return 0, 0, ErrNoMetrics
	}
	ratio, avg := h.ratio(metrics)
	within := func(r float64) bool { return math.Abs(r-1) <= Tolerance }
	if len(missing) == 0 {
		if within(ratio) {
			return current, avg, nil
		}
		return int(math.Ceil(ratio * float64(len(metrics)))), avg, nil
	}
	// pods without a metric: at the target when scaling down, at zero when
	// scaling up, so that they damp the change
	for _, p := range missing {
		if ratio < 1 {
			metrics[p] = h.Target
		} else {
			metrics[p] = 0
		}
	}
	nr, _ := h.ratio(metrics)
	if within(nr) || (ratio > 1 && nr < 1) || (ratio < 1 && nr > 1) {
		return current, avg, nil
	}
	n := int(math.Ceil(nr * float64(len(metrics))))
	if (nr < 1 && n > current) || (nr > 1 && n < current) {
		return current, avg, nil
	}
	return n, avg, nil
}

func (h *HPA) ratio(metrics map[string]float64) (ratio, avg float64) {
	var sum float64
	for _, v := range metrics {
		sum += v
	}
	avg = sum / float64(len(metrics))
	return avg / h.Target, avg
}

// stabilize keeps the recommendation within the lowest of the scale-up
// window and the highest of the scale-down window, then records the
// unstabilized recommendation.
func (h *HPA) stabilize(now time.Time, current, desired int) int {
	up, down := desired, desired
	upCut, downCut := now.Add(-h.Up.Window), now.Add(-h.Down.Window)
	keep := h.recs[:0]
	for _, r := range h.recs {
		if r.at.After(upCut) {
			up = min(up, r.replicas)
		}
		if r.at.After(downCut) {
			down = max(down, r.replicas)
		}
		if r.at.After(upCut) || r.at.After(downCut) {
			keep = append(keep, r)
		}
	}
	h.recs = append(keep, recommendation{now, desired})
	rec := current
	if rec < up {
		rec = up
	}
	if rec > down {
		rec = down
	}
	return rec
}

// limit applies the scaling policies (the change allowed per period,
// counting the changes already made in it) and the replica bounds.
func (h *HPA) limit(now time.Time, current, desired int) (int, string) {
	switch {
	case desired > current:
		lim := h.upLimit(now, current)
		if lim < current {
			lim = current
		}
		allowed, why := h.Max, "maxReplicas"
		if lim < allowed {
			allowed, why = lim, "scale-up policy"
		}
		if desired > allowed {
			return allowed, why
		}
	case desired < current:
		lim := h.downLimit(now, current)
		if lim > current {
			lim = current
		}
		allowed, why := h.Min, "minReplicas"
		if lim > allowed {
			allowed, why = lim, "scale-down policy"
		}
		if desired < allowed {
			return allowed, why
		}
	}
	return desired, ""
}

func changed(now time.Time, period time.Duration, events []scaleEvent) int {
	n := 0
	for _, e := range events {
		if e.at.After(now.Add(-period)) {
			n += e.change
		}
	}
	return n
}

func (h *HPA) upLimit(now time.Time, current int) int {
	if h.Up.SelectPolicy == autoscalingv2.DisabledPolicySelect {
		return current
	}
	pick, res := maxInt, math.MinInt32
	if h.Up.SelectPolicy == autoscalingv2.MinChangePolicySelect {
		pick, res = minInt, math.MaxInt32
	}
	for _, p := range h.Up.Policies {
		start := current - changed(now, p.Period, h.upEvents) + changed(now, p.Period, h.dnEvents)
		prop := start + p.Value
		if p.Type == autoscalingv2.PercentScalingPolicy {
			prop = int(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		}
		res = pick(res, prop)
	}
	return res
}

func (h *HPA) downLimit(now time.Time, current int) int {
	if h.Down.SelectPolicy == autoscalingv2.DisabledPolicySelect {
		return current
	}
	pick, res := minInt, math.MaxInt32
	if h.Down.SelectPolicy == autoscalingv2.MinChangePolicySelect {
		pick, res = maxInt, math.MinInt32
	}
	for _, p := range h.Down.Policies {
		start := current - changed(now, p.Period, h.upEvents) + changed(now, p.Period, h.dnEvents)
		prop := start - p.Value
		if p.Type == autoscalingv2.PercentScalingPolicy {
			prop = int(float64(start) * (1 - float64(p.Value)/100))
		}
		res = pick(res, prop)
	}
	return res
}

// record remembers a scale change for the policies' periods.
func (h *HPA) record(now time.Time, current, desired int) {
	longest := time.Duration(0)
	for _, p := range append(append([]Policy{}, h.Up.Policies...), h.Down.Policies...) {
		longest = max(longest, p.Period)
	}
	prune := func(ev []scaleEvent) []scaleEvent {
		out := ev[:0]
		for _, e := range ev {
			if e.at.After(now.Add(-longest)) {
				out = append(out, e)
			}
		}
		return out
	}
	h.upEvents, h.dnEvents = prune(h.upEvents), prune(h.dnEvents)
	switch {
	case desired > current:
		h.upEvents = append(h.upEvents, scaleEvent{now, desired - current})
	case desired < current:
		h.dnEvents = append(h.dnEvents, scaleEvent{now, current - desired})
	}
}

func minInt(a, b int) int { return min(a, b) }
func maxInt(a, b int) int { return max(a, b) }
