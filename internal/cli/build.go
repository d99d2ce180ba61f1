package cli

import (
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/nodeboot/nodeboot/internal/build"
	"github.com/nodeboot/nodeboot/internal/image"
)

// buildFlags are shared by build and run.
type buildFlags struct {
	config, node, kernel, compression, arch string
}

func (f *buildFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "nodeboot.json to use (default: the app dir's nodeboot.json, if any)")
	fs.StringVar(&f.node, "node", "", "node to put in the image: a version (22, 22.21.1) fetched from the npm registry npm is configured for, or a path to a node binary (default: the host's node if it satisfies engines.node)")
	fs.StringVar(&f.kernel, "kernel", "", "Linux kernel (bzImage) to boot (default: the kernel pinned in nodeboot's go.mod)")
	fs.StringVar(&f.compression, "compression", "zstd", "initramfs compression: zstd, gzip or none")
	fs.StringVar(&f.arch, "arch", "amd64", "target architecture")
}

func (f *buildFlags) options(appDir, outDir string, log io.Writer) (build.Options, error) {
	comp, err := image.ParseCompression(f.compression)
	if err != nil {
		return build.Options{}, err
	}
	return build.Options{
		AppDir:      appDir,
		ConfigPath:  f.config,
		OutDir:      outDir,
		Arch:        f.arch,
		Node:        f.node,
		Kernel:      f.kernel,
		Compression: comp,
		Log:         log,
		Version:     version(),
	}, nil
}

func newBuild(stdout, stderr io.Writer) *cobra.Command {
	var bf buildFlags
	var out string
	cmd := &cobra.Command{
		Use:   "build [APP_DIR]",
		Short: "Build a bootable image from a Node.js app directory",
		Long: `Build a bootable image from a Node.js app directory (default: the current one).

The output directory receives:
  vmlinuz              the Linux kernel
  initramfs.cpio.zst   the root file system: init, node, its libraries, the app
  manifest.json        every input with version and sha256, and the sizes

The same inputs always give byte-identical output.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := "."
			if len(args) == 1 {
				dir = args[0]
			}
			o, err := bf.options(dir, out, stderr)
			if err != nil {
				return err
			}
			res, err := build.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			_, err = io.WriteString(stdout, "built "+res.InitrdPath+"\n")
			return err
		},
	}
	bf.register(cmd.Flags())
	cmd.Flags().StringVarP(&out, "output", "o", "out", "output directory")
	return cmd
}
