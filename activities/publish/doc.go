// Package publish holds kiln's activities that publish a built image to
// clouds. For AWS (type AWS) they turn a raw disk in S3 into AMIs the way
// Garden Linux did: import it as an EBS snapshot, register an image, tag it,
// copy it to every target region, wait for the copies, and make them public.
// DeleteImages is the compensation that removes everything a publish made.
//
// Every activity is one idempotent side effect, keyed by the publish key
// (a flavour's publish): ImportSnapshot and CopyImage send ClientTokens
// derived from it, RegisterImage adopts the image of its name that carries
// the key, and every import task, snapshot and image gets the tag TagKey
// with the key when it is created, so a retry finds the earlier result and
// DeleteImages finds everything even after a crash lost the IDs.
//
// Errors EC2 gives for bad credentials or permissions and for bad requests
// are non-retryable application errors of types ErrTypeAccessDenied and
// ErrTypeInvalidRequest; a failed import or image is ErrTypeImportFailed or
// ErrTypeImageFailed; an image name taken by something else is
// ErrTypeConflict. Throttling, 5xx and network errors are retried inside an
// activity attempt by the SDK (AWSOptions.MaxAttempts, MaxBackoff) and then
// by Temporal.
package publish
