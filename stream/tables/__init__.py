"""What every worker reads whole from Kafka: the consent table and the pseudonym key ring."""
