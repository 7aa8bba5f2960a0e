package qemu

import "github.com/u-root/mkuimage/cpio"

type cpioRecord = cpio.Record

func staticFile(name, content string) cpio.Record { return cpio.StaticFile(name, content, 0o644) }
