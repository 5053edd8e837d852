package main

import (
	"fmt"
	"net"
	"strconv"
)

// ports are the listeners of a server command (kiln serve, kiln gateway):
// HTTP, and gRPC and metrics unless their port is negative (then nil).
type ports struct {
	http, grpc, metrics net.Listener
}

// listenPorts listens on host at the three ports; on an error the ones
// already open are closed, and the error names the port's role.
func listenPorts(host string, httpPort, grpcPort, metricsPort int) (*ports, error) {
	p := &ports{}
	listen := func(port int) (net.Listener, error) {
		return net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	}
	var err error
	if p.http, err = listen(httpPort); err != nil {
		return nil, err
	}
	if grpcPort >= 0 {
		if p.grpc, err = listen(grpcPort); err != nil {
			p.close()
			return nil, fmt.Errorf("grpc: %w", err)
		}
	}
	if metricsPort >= 0 {
		if p.metrics, err = listen(metricsPort); err != nil {
			p.close()
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return p, nil
}

// close closes every open listener.
func (p *ports) close() {
	for _, l := range []net.Listener{p.http, p.grpc, p.metrics} {
		if l != nil {
			l.Close()
		}
	}
}
