//go:build !unix

package atomicfile

import (
	"fmt"
	"os"
	"runtime"
)

func tryLock(*os.File) (bool, error) {
	return false, fmt.Errorf("file locking not implemented on %s/%s", runtime.GOOS, runtime.GOARCH)
}

func unlock(*os.File) error { return nil }
