Feature: Service two delivers requests to the third party
  Service two consumes the request events, gets a token and posts each request to the third party,
  retrying what is worth retrying and dead-lettering what never will succeed.

  Background:
    Given service two is running against the stub

  Scenario: A published request reaches the third party with a token
    When a request event is published
    Then the third party receives it exactly once with a bearer token

  Scenario: The token is fetched once for many messages
    When 20 request events are published
    Then the third party receives all 20 of them
    And the stub issued exactly 1 token

  Scenario: A 503 then a 200 is delivered once
    Given the third party will fail the next 1 call with 503
    When a request event is published
    Then the third party receives it exactly once with a bearer token
    And the third party saw 2 attempts for it

  Scenario: A poison message lands in the dead-letter topic
    When an undecodable message is published
    And a request event is published
    Then the undecodable message is in the dead-letter topic with reason "permanent"
    And the third party receives it exactly once with a bearer token
