package cli

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/nodeboot/nodeboot/internal/usercache"
)

func newCache(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cache",
		Short: "List or prune what nodeboot keeps in the user cache dir",
		Long: `nodeboot keeps node versions from the npm registry, kernels, and the image
'nodeboot run APP_DIR' builds for each app dir (disk images are 2 GiB sparse
files) in the user cache dir. 'cache ls' lists them with the disk space each
uses; 'cache prune' removes them, except the image of a run that is going
on (everything else is fetched or built again when needed).`,
	}
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the cache's node versions, kernels, run images and build parts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := usercache.Root()
			if err != nil {
				return err
			}
			ents, err := usercache.List(root)
			if err != nil {
				return err
			}
			if len(ents) == 0 {
				fmt.Fprintf(stdout, "%s is empty\n", root)
				return nil
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tNAME\tSIZE\tMODIFIED\t")
			var total int64
			for _, e := range ents {
				name := e.Name
				if e.InUse {
					name += " (in use)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", e.Kind, name, humanBytes(e.Bytes), e.ModTime.Format("2006-01-02 15:04"))
				total += e.Bytes
			}
			tw.Flush()
			fmt.Fprintf(stdout, "%s in %s\n", humanBytes(total), root)
			return nil
		},
	}
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove cached node versions, kernels, build parts and run images no running VM uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, err := usercache.Root()
			if err != nil {
				return err
			}
			removed, inUse, err := usercache.Prune(root, nil)
			var freed int64
			for _, e := range removed {
				fmt.Fprintf(stdout, "removed %s %s (%s)\n", e.Kind, e.Name, humanBytes(e.Bytes))
				freed += e.Bytes
			}
			for _, e := range inUse {
				fmt.Fprintf(stdout, "kept %s %s: a nodeboot run is using it\n", e.Kind, e.Name)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "freed %s\n", humanBytes(freed))
			return nil
		},
	}
	cmd.AddCommand(ls, prune)
	return cmd
}
