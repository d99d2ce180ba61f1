//go:build !linux

package bundle

func onTmpfs(string) bool { return false }
