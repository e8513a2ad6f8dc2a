package main

import (
	"fmt"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/jsii-runtime-go"
)

// lambdaNetwork is where functions that reach the existing RDS instance run.
type lambdaNetwork struct {
	Vpc            awsec2.IVpc
	Subnets        *awsec2.SubnetSelection
	SecurityGroups []awsec2.ISecurityGroup
}

// importNetwork references the VPC, subnets and security groups by id. No
// lookup: `cdk synth --no-lookups` works with or without these ids, and the
// template holds exactly the ids given.
func importNetwork(stack awscdk.Stack, cfg Config) *lambdaNetwork {
	if !cfg.InVpc() {
		return nil
	}
	// Only the subnets below are used, so the VPC's own zone and subnet lists
	// are never read; Fn::GetAZs keeps the import env-agnostic.
	vpc := awsec2.Vpc_FromVpcAttributes(stack, jsii.String("Vpc"), &awsec2.VpcAttributes{
		VpcId:             jsii.String(cfg.VpcID),
		AvailabilityZones: awscdk.Fn_GetAzs(nil),
	})
	awscdk.Annotations_Of(vpc).AcknowledgeWarning(jsii.String("@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones"),
		jsii.String("functions use explicit subnets, never the VPC's zone list"))
	n := &lambdaNetwork{Vpc: vpc}
	subnets := make([]awsec2.ISubnet, len(cfg.SubnetIDs))
	for i, id := range cfg.SubnetIDs {
		subnets[i] = awsec2.Subnet_FromSubnetId(stack, jsii.String(fmt.Sprintf("Subnet%d", i)), jsii.String(id))
		awscdk.Annotations_Of(subnets[i]).AcknowledgeWarning(jsii.String("@aws-cdk/aws-ec2:noSubnetRouteTableId"),
			jsii.String("nothing here reads the subnet's route table"))
	}
	n.Subnets = &awsec2.SubnetSelection{Subnets: &subnets}
	for i, id := range cfg.SecurityGroupIDs {
		// Immutable: the stack must never add rules to groups it does not own.
		n.SecurityGroups = append(n.SecurityGroups, awsec2.SecurityGroup_FromSecurityGroupId(stack,
			jsii.String(fmt.Sprintf("SecurityGroup%d", i)), jsii.String(id),
			&awsec2.SecurityGroupImportOptions{Mutable: jsii.Bool(false)}))
	}
	return n
}
