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

  @serial
  Scenario: With the broker down, service one stays ready and its outbox holds what it accepts
    When the Kafka broker is stopped
    And 40 requests are posted
    Then service one is ready and accepted all 40
    And the outbox holds at least 40 unsent messages
    When the Kafka broker is started again
    Then all of them reach the third party

  Scenario: Nothing accepted is lost when service two restarts mid-way
    When 200 requests are posted while service two restarts
    Then every accepted request id reaches the third party
