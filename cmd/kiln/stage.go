package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/activities/storage"
)

func newStageCommand() *cobra.Command {
	var bucket, prefix, result, endpoint string
	pathStyle, _ := strconv.ParseBool(os.Getenv("KILN_S3_PATH_STYLE"))
	cmd := &cobra.Command{
		Use:   "stage FILE...",
		Short: "Upload an image pipeline's files to the staging bucket and write its artifacts result",
		Long: `Upload files to the staging bucket, streaming each one (a multipart upload
for large files, never the whole file in memory) and hashing it on the way,
and write the image pipeline's "artifacts" result: the JSON list of
{"name", "key", "size", "sha256"} that kiln verifies, promotes and records
in the flavour's release manifest.

Use it as the last step of an image pipeline, with --result pointing at
$(results.artifacts.path). Each file's key is --prefix followed by its
base name.

Credentials, region and endpoint come from the AWS SDK's default chain:
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile, web identity, an
instance role), AWS_REGION, and AWS_ENDPOINT_URL_S3 for an S3-compatible
server. --path-style (or KILN_S3_PATH_STYLE=true) addresses buckets as
endpoint/bucket, as most S3-compatible servers want.`,
		Example: `  kiln stage --bucket gardenlinux-staging --prefix builds/1443.3-4f1c2e9/aws-gardener_prod-amd64/ \
      --result $(results.artifacts.path) rootfs.raw rootfs.raw.sha256
  AWS_ENDPOINT_URL_S3=http://127.0.0.1:7070 kiln stage --path-style --bucket staging image.tar.gz`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			if bucket == "" {
				return fmt.Errorf("--bucket is required: the staging bucket the worker's storage.stagingBucket names")
			}
			ctx := cmd.Context()
			cfg, err := awsconfig.LoadDefaultConfig(ctx)
			if err != nil {
				return fmt.Errorf("AWS settings: %w", err)
			}
			if cfg.Region == "" {
				cfg.Region = "us-east-1" // S3-compatible servers ignore it; the SDK signs with one
			}
			client := s3.NewFromConfig(cfg, func(o *s3.Options) {
				if endpoint != "" {
					o.BaseEndpoint = aws.String(endpoint)
				}
				o.UsePathStyle = pathStyle
			})
			arts := make([]storage.Artifact, 0, len(files))
			for _, path := range files {
				f, err := os.Open(path)
				if err != nil {
					return err
				}
				key := prefix + filepath.Base(path)
				up, err := storage.Upload(ctx, client, bucket, key, f, 0, "")
				f.Close()
				if err != nil {
					return fmt.Errorf("stage %s: %w", path, err)
				}
				arts = append(arts, storage.Artifact{Name: filepath.Base(path), Key: key, Size: up.Bytes, SHA256: up.SHA256})
				fmt.Fprintf(cmd.ErrOrStderr(), "staged %s as s3://%s/%s (%d bytes, sha256 %s)\n", path, bucket, key, up.Bytes, up.SHA256)
			}
			b, err := json.Marshal(arts)
			if err != nil {
				return err
			}
			if result == "" || result == "-" {
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return err
			}
			return os.WriteFile(result, b, 0o644)
		},
	}
	f := cmd.Flags()
	f.StringVar(&bucket, "bucket", "", "the staging bucket (required)")
	f.StringVar(&prefix, "prefix", "", "key prefix, such as builds/<version>-<commit>/<flavour>/")
	f.StringVar(&result, "result", "", "write the artifacts JSON to this file, such as $(results.artifacts.path) (default: stdout)")
	f.StringVar(&endpoint, "endpoint", "", "S3 endpoint URL (default: AWS_ENDPOINT_URL_S3, else AWS)")
	f.BoolVar(&pathStyle, "path-style", pathStyle, "path-style bucket addressing (default: KILN_S3_PATH_STYLE)")
	return cmd
}
