/* fixture: a.h */
