// Package durable makes file system changes survive a crash, the way
// raft's file snapshot sink does: write a temporary file beside the
// target, fsync it, rename it over the target, fsync the directory. A
// directory entry (a new file, a rename, a new directory) is durable only
// once its parent directory has been fsynced.
//
// Some file systems refuse fsync on a directory with EINVAL (tmpfs did
// long ago, some FUSE and network file systems still do); that is taken to
// mean the entry is as durable as the file system can make it.
//
// It imports the standard library only, so that every package may use it.
// What is written where, and which errors mean what to a caller, is the
// caller's business.
package durable
