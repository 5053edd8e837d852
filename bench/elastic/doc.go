// Command elastic runs the Helm chart's autoscaling loop on one machine with
// real parts: kiln serve replicas behind kiln gateway, a real Prometheus
// scraping them, kiln perf driving a load that rises and falls, and the
// Kubernetes HorizontalPodAutoscaler's algorithm (hpa.go) applied to the
// chart's HPA metric, as prometheus-adapter's rule computes it, queried from
// Prometheus' HTTP API. It starts and deletes replicas as Kubernetes does,
// and records replicas, load, p99 latency and errors over time as CSV, an
// SVG plot and a Markdown report (bench/results/elastic-loop.*).
//
//	bash bench/elastic-loop.sh
package main
