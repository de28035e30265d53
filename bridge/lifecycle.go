package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
)

// component is one part of the service, brought up in two steps so that a
// failure leaves nothing running: every part is built (store opened,
// listeners bound, servers created) before any is started (serve loops and
// the poll loop launched).
type component struct {
	name string
	// build opens what the part needs without starting it, and must undo
	// its own work when it fails. nil: nothing to build.
	build func(ctx context.Context) error
	// unbuild releases what a successful build opened, for a part that
	// was never started because a later part failed to build. nil:
	// nothing to release.
	unbuild func() error
	// start launches a built part; it cannot fail (what can fail happens
	// in build). nil: nothing to launch.
	start func()
	// stop stops a started part and must return once ctx is done.
	stop func(ctx context.Context) error
}

// buildAll builds comps in order. If one fails (or ctx is done), the ones
// already built are released in reverse order and the joined error is
// returned: nothing was started, nothing is left open.
func buildAll(ctx context.Context, comps []component, log *slog.Logger) error {
	for i, c := range comps {
		err := ctx.Err()
		if err == nil && c.build != nil {
			err = c.build(ctx)
		}
		if err != nil {
			return errors.Join(fmt.Errorf("start %s: %w", c.name, err), unbuildAll(comps[:i], log))
		}
		log.Debug("built", "component", c.name)
	}
	return nil
}

// unbuildAll releases built, never started comps in reverse order and
// joins the errors.
func unbuildAll(comps []component, log *slog.Logger) error {
	var errs []error
	for i := len(comps) - 1; i >= 0; i-- {
		c := comps[i]
		if c.unbuild == nil {
			continue
		}
		if err := c.unbuild(); err != nil {
			errs = append(errs, fmt.Errorf("release %s: %w", c.name, err))
			log.Error("release failed", "component", c.name, "err", err)
		}
	}
	return errors.Join(errs...)
}

// startAll starts built comps in order.
func startAll(comps []component, log *slog.Logger) {
	for _, c := range comps {
		if c.start != nil {
			c.start()
		}
		log.Debug("started", "component", c.name)
	}
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
