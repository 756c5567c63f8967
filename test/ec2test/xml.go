package ec2test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"time"
)

// The EC2 Query protocol's XML responses, with the element names of the
// 2016-11-15 API that aws-sdk-go-v2's deserializers read.

const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// envelope is a response: the action's element, the request ID, and the
// body's elements.
type envelope struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Inner     []byte `xml:",innerxml"`
}

// marshal renders body's fields inside the action's response element.
func marshal(action, requestID string, body any) ([]byte, error) {
	b, err := xml.Marshal(body)
	if err != nil {
		return nil, err
	}
	// b is <typeName>fields</typeName>: keep the fields.
	start, end := bytes.IndexByte(b, '>'), bytes.LastIndex(b, []byte("</"))
	if start < 0 || end < start {
		return nil, fmt.Errorf("marshal %T: unexpected %q", body, b)
	}
	return xml.Marshal(envelope{XMLName: xml.Name{Local: action + "Response"}, Xmlns: xmlns, RequestID: requestID, Inner: b[start+1 : end]})
}

type xmlError struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xmlTags(m map[string]string) []xmlTag {
	var out []xmlTag
	for _, k := range sortedKeys(m) {
		out = append(out, xmlTag{k, m[k]})
	}
	return out
}

type xmlUserBucket struct {
	S3Bucket string `xml:"s3Bucket"`
	S3Key    string `xml:"s3Key"`
}

type xmlSnapshotTaskDetail struct {
	Description   string         `xml:"description,omitempty"`
	DiskImageSize string         `xml:"diskImageSize,omitempty"`
	Encrypted     bool           `xml:"encrypted"`
	Format        string         `xml:"format,omitempty"`
	Progress      string         `xml:"progress,omitempty"`
	SnapshotID    string         `xml:"snapshotId,omitempty"`
	Status        string         `xml:"status"`
	StatusMessage string         `xml:"statusMessage,omitempty"`
	URL           string         `xml:"url,omitempty"`
	UserBucket    *xmlUserBucket `xml:"userBucket,omitempty"`
}

type xmlImportTask struct {
	Description        string                `xml:"description,omitempty"`
	ImportTaskID       string                `xml:"importTaskId"`
	SnapshotTaskDetail xmlSnapshotTaskDetail `xml:"snapshotTaskDetail"`
	Tags               []xmlTag              `xml:"tagSet>item"`
}

type describeImportSnapshotTasksResponse struct {
	Tasks     []xmlImportTask `xml:"importSnapshotTaskSet>item"`
	NextToken string          `xml:"nextToken,omitempty"`
}

type cancelImportTaskResponse struct {
	ImportTaskID  string `xml:"importTaskId"`
	PreviousState string `xml:"previousState"`
	State         string `xml:"state"`
}

type xmlEbs struct {
	SnapshotID          string `xml:"snapshotId,omitempty"`
	VolumeSize          int    `xml:"volumeSize,omitempty"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
	VolumeType          string `xml:"volumeType,omitempty"`
	Encrypted           bool   `xml:"encrypted"`
}

type xmlBlockDevice struct {
	DeviceName string  `xml:"deviceName"`
	Ebs        *xmlEbs `xml:"ebs,omitempty"`
}

type xmlStateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type xmlImage struct {
	ImageID            string           `xml:"imageId"`
	ImageLocation      string           `xml:"imageLocation"`
	ImageState         string           `xml:"imageState"`
	ImageOwnerID       string           `xml:"imageOwnerId"`
	CreationDate       string           `xml:"creationDate"`
	IsPublic           bool             `xml:"isPublic"`
	Architecture       string           `xml:"architecture"`
	ImageType          string           `xml:"imageType"`
	Name               string           `xml:"name"`
	Description        string           `xml:"description,omitempty"`
	RootDeviceType     string           `xml:"rootDeviceType"`
	RootDeviceName     string           `xml:"rootDeviceName,omitempty"`
	BlockDeviceMapping []xmlBlockDevice `xml:"blockDeviceMapping>item"`
	VirtualizationType string           `xml:"virtualizationType"`
	Hypervisor         string           `xml:"hypervisor"`
	EnaSupport         bool             `xml:"enaSupport"`
	BootMode           string           `xml:"bootMode,omitempty"`
	SourceImageID      string           `xml:"sourceImageId,omitempty"`
	SourceImageRegion  string           `xml:"sourceImageRegion,omitempty"`
	StateReason        *xmlStateReason  `xml:"stateReason,omitempty"`
	Tags               []xmlTag         `xml:"tagSet>item"`
}

type describeImagesResponse struct {
	Images    []xmlImage `xml:"imagesSet>item"`
	NextToken string     `xml:"nextToken,omitempty"`
}

type imageIDResponse struct {
	ImageID string `xml:"imageId"`
}

type returnResponse struct {
	Return bool `xml:"return"`
}

type xmlSnapshot struct {
	SnapshotID  string   `xml:"snapshotId"`
	VolumeID    string   `xml:"volumeId"`
	Status      string   `xml:"status"`
	StartTime   string   `xml:"startTime"`
	Progress    string   `xml:"progress"`
	OwnerID     string   `xml:"ownerId"`
	VolumeSize  int      `xml:"volumeSize"`
	Description string   `xml:"description,omitempty"`
	Encrypted   bool     `xml:"encrypted"`
	StorageTier string   `xml:"storageTier"`
	Tags        []xmlTag `xml:"tagSet>item"`
}

type describeSnapshotsResponse struct {
	Snapshots []xmlSnapshot `xml:"snapshotSet>item"`
	NextToken string        `xml:"nextToken,omitempty"`
}

type xmlRegion struct {
	RegionName     string `xml:"regionName"`
	RegionEndpoint string `xml:"regionEndpoint"`
	OptInStatus    string `xml:"optInStatus"`
}

type describeRegionsResponse struct {
	Regions []xmlRegion `xml:"regionInfo>item"`
}

func timestamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
