DROP TABLE addresses;
DROP TABLE refresh_tokens;
DROP TABLE customers;
