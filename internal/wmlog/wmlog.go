// Package wmlog adapts slog for Watermill. Watermill reports its routine
// life cycle (handlers added, subscribers started and closed) at INFO, which
// would bury the chat's own start-up and shutdown lines, and reports the
// queries that shutdown cancels as errors; both go to DEBUG here. Its other
// warnings and errors keep their levels.
package wmlog

import (
	"context"
	"errors"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill"
)

// New returns a Watermill logger writing to logger.
func New(logger *slog.Logger) watermill.LoggerAdapter {
	return adapter{watermill.NewSlogLoggerWithLevelMapping(logger, map[slog.Level]slog.Level{
		slog.LevelInfo: slog.LevelDebug,
	})}
}

type adapter struct{ watermill.LoggerAdapter }

var _ watermill.LoggerAdapter = adapter{}

func (a adapter) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, context.Canceled) {
		a.Debug(msg, fields.Add(watermill.LogFields{"error": err}))
		return
	}
	a.LoggerAdapter.Error(msg, err, fields)
}

func (a adapter) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return adapter{a.LoggerAdapter.With(fields)}
}
