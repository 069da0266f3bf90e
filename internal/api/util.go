package api

import (
	"errors"

	"github.com/meshpki/meshpki/internal/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }
