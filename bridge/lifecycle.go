package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// component is one part of the service with a start and a stop step.
// start must either succeed completely or undo what it did; stop is called
// only after a successful start and must return once ctx is done.
type component struct {
	name  string
	start func(ctx context.Context) error
	stop  func(ctx context.Context) error
}

// startAll starts comps in order. If one fails, the ones already started
// are stopped in reverse order (with stopCtx) and the joined error is
// returned; on success it returns the started list for stopAll.
func startAll(ctx context.Context, comps []component, log *slog.Logger, stopCtx func() (context.Context, context.CancelFunc)) ([]component, error) {
	var started []component
	for _, c := range comps {
		if err := ctx.Err(); err != nil {
			return nil, rollback(started, log, stopCtx, fmt.Errorf("start %s: %w", c.name, err))
		}
		if err := c.start(ctx); err != nil {
			return nil, rollback(started, log, stopCtx, fmt.Errorf("start %s: %w", c.name, err))
		}
		log.Debug("started", "component", c.name)
		started = append(started, c)
	}
	return started, nil
}

func rollback(started []component, log *slog.Logger, stopCtx func() (context.Context, context.CancelFunc), cause error) error {
	ctx, cancel := stopCtx()
	defer cancel()
	return errors.Join(cause, stopAll(ctx, started, log))
}

// stopAll stops comps in reverse order, each with ctx, and joins the errors.
// Every component is stopped even when an earlier stop failed.
func stopAll(ctx context.Context, comps []component, log *slog.Logger) error {
	var errs []error
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		if err := c.stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", c.name, err))
			log.Error("stop failed", "component", c.name, "err", err)
			continue
		}
		log.Debug("stopped", "component", c.name)
	}
	return errors.Join(errs...)
}
