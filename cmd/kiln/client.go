package main

import (
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	"go.temporal.io/sdk/log"
)

// temporalEnvHelp is appended to the help of commands that talk to Temporal.
const temporalEnvHelp = `

The Temporal connection comes from the environment, as with the temporal
CLI: TEMPORAL_ADDRESS (default localhost:7233), TEMPORAL_NAMESPACE (default
"default"), TEMPORAL_API_KEY, TEMPORAL_TLS*, or a profile in
TEMPORAL_CONFIG_FILE with TEMPORAL_PROFILE.`

// dialTemporal connects to Temporal with the envconfig settings.
func dialTemporal(logger *slog.Logger) (client.Client, error) {
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil {
		return nil, fmt.Errorf("temporal settings: %w", err)
	}
	opts.Logger = log.NewStructuredLogger(logger)
	c, err := client.Dial(opts)
	if err != nil {
		addr := opts.HostPort
		if addr == "" {
			addr = client.DefaultHostPort
		}
		return nil, fmt.Errorf("connect to Temporal at %s (set TEMPORAL_ADDRESS): %w", addr, err)
	}
	return c, nil
}

// temporalNamespace is the namespace dialTemporal's client uses.
func temporalNamespace() string {
	opts, err := envconfig.LoadDefaultClientOptions()
	if err != nil || opts.Namespace == "" {
		return client.DefaultNamespace
	}
	return opts.Namespace
}
