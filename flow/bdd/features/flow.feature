Feature: The whole flow loses nothing
  A request posted to service one reaches the third party through PostgreSQL, the outbox, Kafka
  and service two — exactly once in the normal case, at least once (and de-duplicated) when parts
  of the system restart.

  Background:
    Given the whole flow is running

  Scenario: A posted request reaches the third party exactly once
    When a client posts a valid request
    Then the third party receives that request id exactly once

  @serial
  Scenario: Nothing accepted is lost when the broker restarts mid-way
    When 200 requests are posted while the Kafka broker restarts
    Then every accepted request id reaches the third party

  Scenario: Nothing accepted is lost when service two restarts mid-way
    When 200 requests are posted while service two restarts
    Then every accepted request id reaches the third party
