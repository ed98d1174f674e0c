DROP TABLE durability_barriers;
