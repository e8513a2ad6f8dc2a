package sqs

import (
	wmsqs "github.com/ThreeDotsLabs/watermill-aws/sqs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/parleychat/parley/events/eventbridge/ebevent"
)

// Metadata keys set by the unmarshaler.
const (
	metaInvalid       = "parley_invalid"
	metaSQSMessageID  = "sqs_message_id"
	metaReceiptHandle = "sqs_receipt_handle"
	metaReceiveCount  = "sqs_receive_count"
	metaEventBridgeID = "eventbridge_id"
	metaReplayName    = "eventbridge_replay"
)

// unmarshaler reads the body EventBridge puts on a rule's SQS queue (the
// EventBridge event, without message attributes): the Watermill message UUID
// becomes the chat event id and the payload the chat envelope, which is the
// event's detail. A body that is not such an event is still handed over,
// flagged invalid, so that the consumer logs it and the queue's redrive
// policy dead-letters it: an unmarshal error would be retried in silence.
type unmarshaler struct{}

var _ wmsqs.Unmarshaler = unmarshaler{}

func (unmarshaler) Unmarshal(m *sqstypes.Message) (*message.Message, error) {
	body := []byte(aws.ToString(m.Body))
	msg, err := fromEventBridge(body)
	if err != nil {
		msg = message.NewMessage(aws.ToString(m.MessageId), body)
		msg.Metadata.Set(metaInvalid, err.Error())
	}
	msg.Metadata.Set(metaSQSMessageID, aws.ToString(m.MessageId))
	msg.Metadata.Set(metaReceiptHandle, aws.ToString(m.ReceiptHandle))
	msg.Metadata.Set(metaReceiveCount, m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	return msg, nil
}

func fromEventBridge(body []byte) (*message.Message, error) {
	ev, err := ebevent.Parse(body)
	if err != nil {
		return nil, err
	}
	env, err := ev.Envelope()
	if err != nil {
		return nil, err
	}
	msg := message.NewMessage(env.ID, message.Payload(ev.Detail))
	msg.Metadata.Set(metaEventBridgeID, ev.ID)
	if ev.ReplayName != "" {
		msg.Metadata.Set(metaReplayName, ev.ReplayName)
	}
	return msg, nil
}
